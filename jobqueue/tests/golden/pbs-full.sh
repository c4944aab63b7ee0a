#!/usr/bin/env bash

#PBS -N shoal-w
#PBS -q debug
#PBS -A proj42
#PBS -l select=1:ncpus=8:mem=94GB
#PBS -l walltime=02:00:00
#PBS -e /scratch/logs/
#PBS -J 1-3
#PBS -j oe

module load python
source venv/bin/activate
shoal worker --scheduler-file "$HOME/.shoal/scheduler-1.json" --scheduler-file-timeout 300 --nthreads 4 --memory-limit 50000000000 --name "shoal-w-${PBS_JOBID%%[.[]*}-${PBS_ARRAY_INDEX}" --death-timeout 60 --nworkers 2 --local-directory "$TMPDIR/shoal" --interface ib0 --lifetime 6660 --lifetime-stagger 180 --resources 'GPU=1 MEM=2'
echo "worker exited with $?"
