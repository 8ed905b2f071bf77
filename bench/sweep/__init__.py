"""`bench sweep`: many runs as Slurm (or local) jobs, step 0 first, without blocking."""
