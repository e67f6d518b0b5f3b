"""Monitoring: the durable prediction log (``predlog``) and its queries (``query``)."""
