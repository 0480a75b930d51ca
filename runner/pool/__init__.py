"""The worker pool: a supervisor that spawns K workers per device, each claiming and training jobs.

Lives here: the supervisor (supervisor), the torch-free spawn target each child starts in (entry),
the claim-train-write loop of a worker (worker), devices and CUDA_VISIBLE_DEVICES (devices), CUDA MPS
for several workers per GPU (mps), the live progress display (progress), the bytecode check
(bytecode), where checkpoint files go (checkpoint_dir), what a job printed (job_output, kept with its
attempt) and a dying worker's last words (last_words), both teed off the real streams (tee).

May import: runner.queue, runner.train and the base modules; never results or cli. The supervisor
and the entry module never import torch: a child sets CUDA_VISIBLE_DEVICES before torch loads.
"""
