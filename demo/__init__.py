"""The demo tenant: a deterministic simulator of Entra provisioning into the wiki, both sides."""

from demo.scenario import Scenario
from demo.simulate import generate

__all__ = ["Scenario", "generate"]
