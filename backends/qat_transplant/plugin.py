"""Plugin module of the QAT transplant backend (hooks are added by the QAT work)."""
