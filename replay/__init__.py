"""replay: forensic replay, decision verification, what-if and the audit report."""
