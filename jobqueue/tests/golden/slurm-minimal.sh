#!/usr/bin/env bash

#SBATCH -J shoal-worker
#SBATCH -n 1
#SBATCH -N 1
#SBATCH --cpus-per-task=4
#SBATCH --mem=15G
#SBATCH -t 00:30:00

shoal worker --scheduler-file /shared/scheduler-1.json --scheduler-file-timeout 300 --nthreads 1 --memory-limit 4000000000 --name "shoal-worker-${SLURM_JOB_ID}" --death-timeout 60 --nworkers 4 --lifetime 1665 --lifetime-stagger 45
