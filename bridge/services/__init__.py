"""Services own the transactions: ingest, process, award, queue administration, leases, API keys."""
