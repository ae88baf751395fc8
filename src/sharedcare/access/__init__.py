"""Who may see what: the caller context, the access policy, and the audit records of every interaction."""
