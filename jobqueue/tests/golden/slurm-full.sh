#!/usr/bin/env bash

#SBATCH -J shoal-w
#SBATCH -e /scratch/logs/shoal-w-%A_%a.err
#SBATCH -o /scratch/logs/shoal-w-%A_%a.out
#SBATCH -p debug
#SBATCH -A proj42
#SBATCH -n 1
#SBATCH -N 1
#SBATCH --cpus-per-task=8
#SBATCH -t 02:00:00
#SBATCH --array=1-3
#SBATCH --mem-per-cpu=13G

module load python
source venv/bin/activate
shoal worker --scheduler-file "$HOME/.shoal/scheduler-1.json" --scheduler-file-timeout 300 --nthreads 4 --memory-limit 50000000000 --name "shoal-w-${SLURM_ARRAY_JOB_ID}-${SLURM_ARRAY_TASK_ID}" --death-timeout 60 --nworkers 2 --local-directory "$TMPDIR/shoal" --interface ib0 --lifetime 6660 --lifetime-stagger 180 --resources 'GPU=1 MEM=2'
echo "worker exited with $?"
