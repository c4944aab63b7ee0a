#!/usr/bin/env bash

#PBS -N shoal-worker
#PBS -l select=1:ncpus=4:mem=16GB
#PBS -l walltime=00:30:00

srun -n 1 -c 4 shoal worker --scheduler-file "/shared/scheduler 1.json" --scheduler-file-timeout 300 --nthreads 1 --memory-limit 4294967296 --name "shoal-worker-${PBS_JOBID%%[.[]*}" --death-timeout 60 --nworkers 4
