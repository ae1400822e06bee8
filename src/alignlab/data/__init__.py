"""Data: OpenAssistant conversation trees (`data.oasst`), chat encoding and collation."""
