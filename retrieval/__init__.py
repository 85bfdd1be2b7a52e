"""FAISS vector index, look-alike search and open-set (unknown species) detection."""
