#!/usr/bin/env bash

#BSUB -J shoal-worker
#BSUB -n 4
#BSUB -R "span[hosts=1]"
#BSUB -M 16000000
#BSUB -W 00:30

shoal worker --scheduler-file /shared/scheduler-1.json --scheduler-file-timeout 300 --nthreads 1 --memory-limit 4000000000 --name "shoal-worker-${LSB_JOBID}" --death-timeout 60 --nworkers 4 --lifetime 1665 --lifetime-stagger 45
