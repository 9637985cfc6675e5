"""Small patches that restore real ECS behaviour in moto where tests depend on it.

Each patch names the ECS API behaviour it restores. None yet: the foundation tests only
need what moto serves as it is.
"""


def apply():
    """Apply every patch; called once before moto's server starts."""
