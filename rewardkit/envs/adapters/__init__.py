"""Environments from other frameworks, each a family named ``PREFIX:ARG`` (``rewardkit.registry.ENV_FAMILIES``):
``reasoning_gym:<task>``, ``verifiers:<module>``, ``openenv:<name>``. See docs/interop.md."""
