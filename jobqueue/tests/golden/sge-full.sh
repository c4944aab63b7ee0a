#!/usr/bin/env bash

#$ -N shoal-w
#$ -q debug
#$ -P proj42
#$ -l h_vmem=13G
#$ -l h_rt=02:00:00
#$ -e /scratch/logs/
#$ -o /scratch/logs/
#$ -j y
#$ -t 1-3
#$ -pe smp 8

module load python
source venv/bin/activate
shoal worker --scheduler-file "$HOME/.shoal/scheduler-1.json" --scheduler-file-timeout 300 --nthreads 4 --memory-limit 50000000000 --name "shoal-w-${JOB_ID}-${SGE_TASK_ID}" --death-timeout 60 --nworkers 2 --local-directory "$TMPDIR/shoal" --interface ib0 --lifetime 6660 --lifetime-stagger 180 --resources 'GPU=1 MEM=2'
echo "worker exited with $?"
