#!/usr/bin/env bash

# Resources and the array are in the HTCondor submit description.

srun -n 1 -c 4 shoal worker --scheduler-file "/shared/scheduler 1.json" --scheduler-file-timeout 300 --nthreads 1 --memory-limit 4294967296 --name "shoal-worker-${SHOAL_CONDOR_CLUSTER}" --death-timeout 60 --nworkers 4
