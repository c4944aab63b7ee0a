#!/usr/bin/env bash

#BSUB -J "shoal-w[1-3]"
#BSUB -e /scratch/logs/shoal-w-%J_%I.err
#BSUB -o /scratch/logs/shoal-w-%J_%I.out
#BSUB -q debug
#BSUB -P proj42
#BSUB -n 8
#BSUB -M 100000
#BSUB -W 02:00
#BSUB -R "rusage[mem=12500]"

module load python
source venv/bin/activate
shoal worker --scheduler-file "$HOME/.shoal/scheduler-1.json" --scheduler-file-timeout 300 --nthreads 4 --memory-limit 50000000000 --name "shoal-w-${LSB_JOBID}-${LSB_JOBINDEX}" --death-timeout 60 --nworkers 2 --local-directory "$TMPDIR/shoal" --interface ib0 --lifetime 6660 --lifetime-stagger 180 --resources 'GPU=1 MEM=2'
echo "worker exited with $?"
