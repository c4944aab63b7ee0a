#!/usr/bin/env bash

# Resources and the array are in the HTCondor submit description.

module load python
source venv/bin/activate
shoal worker --scheduler-file "$HOME/.shoal/scheduler-1.json" --scheduler-file-timeout 300 --nthreads 4 --memory-limit 50000000000 --name "shoal-w-${SHOAL_CONDOR_CLUSTER}-${SHOAL_CONDOR_PROCESS}" --death-timeout 60 --nworkers 2 --local-directory "$TMPDIR/shoal" --interface ib0 --lifetime 6660 --lifetime-stagger 180 --resources 'GPU=1 MEM=2'
echo "worker exited with $?"
