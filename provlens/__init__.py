"""provlens: Entra ID provisioning, answered."""
