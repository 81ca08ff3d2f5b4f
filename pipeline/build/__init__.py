"""What each part of an entry writes: the volume pyramid, lattices, mesh sets, geometric
segmentations, and the level loop they share."""
