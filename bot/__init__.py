"""ShortScience feed bot: polls ShortScience.org's feed and publishes each new summary."""

__version__ = "0.1.0"
