#!/bin/bash
cd /runs/qwen-sweep/trials/7
export NCCL_ALGO=Tree
export NCCL_DEBUG=INFO
export NEMORUN_HOME=/runs/qwen-sweep/trials/7
srun '--container-image=nvcr.io#nvidia/nemo:26.02.00' --container-mounts=/lustre/cache:/cache,/lustre/data:/data --no-container-mount-home --mpi=pmix /opt/nemo_run_venv/bin/python -u /opt/Megatron-Bridge/scripts/performance/setup_experiment.py -a perf -p batch -t 00:45:00 -i 'nvcr.io#nvidia/nemo:26.02.00' -m qwen -mr qwen3_30b_a3b --task pretrain --domain llm -g h100 -c fp8_cs -ng 16 -gn 8 -tp 2 -pp 2 -vp 2 -ep 8 -mb 1 -gb 512 -sl 4096 -ms 30 --cuda_graph_impl transformer_engine --cuda_graph_scope attn,moe_router --recompute_modules moe_act,layernorm --moe_a2a_overlap true --use_tokendrop true --data mock -cm /lustre/data:/data --detach false --golden_values_path /runs/qwen-sweep/trials/7/golden_values.json model.seq_length=4096 model.num_layers=24 logger.log_throughput=true logger.log_interval=1
