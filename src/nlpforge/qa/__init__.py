"""Question answering systems over users' data: documents (retrieve, then read)."""
