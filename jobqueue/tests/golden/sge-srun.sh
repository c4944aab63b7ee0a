#!/usr/bin/env bash

#$ -N shoal-worker
#$ -l h_rt=00:30:00
#$ -cwd
#$ -j y

srun -n 1 -c 4 shoal worker --scheduler-file "/shared/scheduler 1.json" --scheduler-file-timeout 300 --nthreads 1 --memory-limit 4294967296 --name "shoal-worker-${JOB_ID}" --death-timeout 60 --nworkers 4
