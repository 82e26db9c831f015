"""Users, roles, API tokens and the audit trail: who may change what, and what they did."""
