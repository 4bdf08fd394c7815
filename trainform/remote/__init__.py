"""Transports to remote machines (SSH) that compute providers build on."""
