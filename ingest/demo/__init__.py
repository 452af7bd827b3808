"""The demo tenant: a deterministic simulator of Entra provisioning into the wiki, both sides."""

from ingest.demo.scenario import Scenario
from ingest.demo.simulate import generate

__all__ = ["Scenario", "generate"]
