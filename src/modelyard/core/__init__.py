"""Domain types shared by every layer: references, versions, signatures, profiles, hashing."""
