#!/usr/bin/env bash

#BSUB -J shoal-worker
#BSUB -n 4
#BSUB -R "span[hosts=1]"
#BSUB -M 17179870
#BSUB -W 00:30

srun -n 1 -c 4 shoal worker --scheduler-file "/shared/scheduler 1.json" --scheduler-file-timeout 300 --nthreads 1 --memory-limit 4294967296 --name "shoal-worker-${LSB_JOBID}" --death-timeout 60 --nworkers 4
