"""The run machinery pretraining and GLUE share: files, buckets, checkpoints, devices and ranks, parallelism, trackers, resources, peak FLOPs, and the fixes for Composer and the two stacks."""
