#!/usr/bin/env bash

#$ -N shoal-worker
#$ -l h_rt=00:30:00
#$ -cwd
#$ -j y

shoal worker --scheduler-file /shared/scheduler-1.json --scheduler-file-timeout 300 --nthreads 1 --memory-limit 4000000000 --name "shoal-worker-${JOB_ID}" --death-timeout 60 --nworkers 4 --lifetime 1665 --lifetime-stagger 45
