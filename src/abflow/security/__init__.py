"""Security: API tokens and roles, the audit hash chain, secret sources."""
