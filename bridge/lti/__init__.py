"""LTI 1.3 tool: launches around pylti1p3, and our own LTI Advantage service client."""
