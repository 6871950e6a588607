"""TCP echo (RFC 862): the connection table and the engines that serve it."""
