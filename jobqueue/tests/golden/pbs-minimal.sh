#!/usr/bin/env bash

#PBS -N shoal-worker
#PBS -l select=1:ncpus=4:mem=15GB
#PBS -l walltime=00:30:00

shoal worker --scheduler-file /shared/scheduler-1.json --scheduler-file-timeout 300 --nthreads 1 --memory-limit 4000000000 --name "shoal-worker-${PBS_JOBID%%[.[]*}" --death-timeout 60 --nworkers 4 --lifetime 1665 --lifetime-stagger 45
