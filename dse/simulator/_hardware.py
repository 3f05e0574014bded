"""The hardware and calibration constants of the performance model (`dse.simulator._model`).

`GPU`/`GPUS` hold the vendors' datasheet figures; `Knobs`/`KNOBS` the efficiencies and overheads, most of
them fitted by `dse.simulator._fit`. They live apart from the formulas so that the fit, the benchmarks and
the model all read one table, and so that a refit touches this file only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

GIB = 1024**3
GB = 1e9


# ---------------------------------------------------------------------------------------------------
# hardware
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GPU:
    """Datasheet numbers of one GPU (dense tensor-core peaks; bandwidths per GPU, one direction, GB/s)."""

    name: str
    peak_bf16_tflops: float
    peak_fp8_tflops: float
    peak_fp4_tflops: float
    hbm_gb: float  # capacity as PyTorch reports it (GiB)
    nvlink_domain: int  # GPUs that reach each other over NVLink (8 per HGX node, 72 per NVL72 rack)
    nvlink_gbps: float
    network_gbps: float  # scale-out NIC bandwidth per GPU
    hbm_tbps: float = 3.35  # HBM bandwidth, TB/s
    host_link_gbps: float = 55.0  # GPU <-> CPU memory (activation offload): PCIe 5 x16 or NVLink-C2C
    gpus_per_node: int = 8
    blackwell: bool = True
    # exp() throughput of the special-function units (MUFU), 10^12/s: SMs x 16/clk x boost clock.
    # Softmax needs one exp per score element (two with the backward recompute) against 4 x head_dim
    # tensor FLOPs, so attention with small heads is exp-bound; Blackwell Ultra doubles the rate.
    exp_tops: float = 4.6
    host: str = "x86"  # the host CPU kind (GB200/GB300: Grace), for `Knobs.host_slowdown`


GPUS: dict[str, GPU] = {
    # HBM capacities are what PyTorch reports (GiB): 80 GB H100 = 79.6 GiB.
    # H100 SXM: 989 / 1979 dense TFLOP/s, no FP4 (nvfp4 runs at FP8 speed), 80 GB HBM3 at 3.35 TB/s,
    # NVLink 4 450 GB/s per direction, 8x 400 Gb/s ConnectX-7 (50 GB/s per GPU).
    "h100": GPU("h100", 989.0, 1979.0, 1979.0, 79.6, 8, 450.0, 50.0, hbm_tbps=3.35, host_link_gbps=55.0,
                blackwell=False, exp_tops=3.9),
    # HGX B200: 2.25 / 4.5 / 9 PFLOP/s dense, ~180 GiB HBM3e at 8 TB/s, NVLink 5 900 GB/s, 400 Gb/s NICs.
    "b200": GPU("b200", 2250.0, 4500.0, 9000.0, 180.0, 8, 900.0, 50.0, hbm_tbps=8.0, host_link_gbps=55.0),
    # HGX B300: FP4 dense 13.5 PFLOP/s, ~270 GiB HBM3e, 800 Gb/s ConnectX-8 (100 GB/s per GPU).
    "b300": GPU("b300", 2250.0, 4500.0, 13500.0, 270.0, 8, 900.0, 100.0, hbm_tbps=8.0, host_link_gbps=55.0,
                exp_tops=9.2),
    # GB200 NVL72: 2.5 / 5 / 10 PFLOP/s dense per GPU, ~186 GiB, 72-GPU NVLink domain, 4 GPUs per tray,
    # Grace NVLink-C2C (450 GB/s per direction, shared by 2 GPUs) for offload, 400 Gb/s NICs.
    "gb200": GPU("gb200", 2500.0, 5000.0, 10000.0, 186.0, 72, 900.0, 50.0, hbm_tbps=8.0, host_link_gbps=200.0,
                 gpus_per_node=4, host="grace"),
    # GB300 NVL72: FP4 dense 15 PFLOP/s, ~279 GiB HBM3e, 800 Gb/s NICs.
    "gb300": GPU("gb300", 2500.0, 5000.0, 15000.0, 279.0, 72, 900.0, 100.0, hbm_tbps=8.0, host_link_gbps=200.0,
                 gpus_per_node=4, exp_tops=9.2, host="grace"),
}


# ---------------------------------------------------------------------------------------------------
# calibration constants
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Knobs:
    """Efficiencies and overheads of the model.

    The defaults marked FITTED are the output of `dse.simulator._fit.fit()` on all 29 rows of the 26.02
    published table (`dse.megatron._published`), rounded to 3 significant digits: bounded least squares on
    log(predicted / published TFLOP/s), each constant with a weak prior towards a textbook value.
    `python -m dse.simulator._fit` reproduces them and tests/test_perfmodel.py checks that it still does,
    so do not edit them by hand: change the model or the bounds in `dse.simulator._fit.FIT_PARAMS`, refit.
    The rest are physical defaults that the published rows do not pin down (held fixed in the fit).
    `benchmarks/bench_perfmodel.py` measures the leave-one-out error of this fit.
    """

    # Best-case fraction of the dtype's dense peak a large GEMM reaches. FITTED (Hopper has no FP4:
    # NVFP4 runs at its FP8 speed). Blackwell BF16 sits on its lower bound: the GPT-OSS rows (the only
    # BF16 rows on Blackwell) are slower than the model explains.
    gemm_eff: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: {
        "hopper": {"bf16": 0.9, "fp8": 0.593},
        "blackwell": {"bf16": 0.6, "fp8": 0.523, "fp4": 0.335},
    })
    # Grouped (MoE expert) GEMMs relative to one large GEMM, by "<family>_<dtype>" or "<family>". FITTED.
    # Hopper runs TE's GroupedLinear as one cuBLAS GEMM (plus FP8 casts) per local expert.
    grouped_gemm_eff: Mapping[str, float] = field(default_factory=lambda: {
        "hopper_bf16": 0.925, "hopper_fp8": 0.468, "blackwell": 0.771})
    # Sustained clocks relative to the datasheet (power limits: GB300 1.4 kW vs GB200 1.2 kW, B300 1.1 kW
    # vs B200 1.0 kW at the same listed dense peaks). FITTED.
    sustained: Mapping[str, float] = field(default_factory=lambda: {"gb300": 1.22, "b300": 1.21})
    # GEMM efficiency falls off for small shapes: eff = best / (1 + m0/M + n0/N + n0/K) (tokens M, local
    # N, K): an additive roofline, whose m0 ~ n0 ~ peak * bytes / (2 * HBM bandwidth) ~ 250. FITTED.
    gemm_m0: float = 298.0
    gemm_n0: float = 280.0
    # expert GEMMs' m0 (0: gemm_m0): ragged per-expert tiles lose more at few tokens per expert. FITTED
    grouped_m0: float = 1.03e3
    # Flash attention (cuDNN) fwd+bwd share of BF16 peak on long sequences. FITTED.
    attn_eff: float = 0.449
    attn_s0: float = 1024.0  # ... less for short per-rank sequences: eff * s / (s + s0)
    # Softmax exp on the special-function units (GPU.exp_tops): share of that time the MMAs do not hide.
    # It makes small heads (GPT-OSS: 64) expensive and Blackwell Ultra (2x exp rate) faster. FITTED.
    attn_exp_exposed: float = 0.549
    window_skip: float = 0.606  # share of the masked-out work sliding-window kernels skip. FITTED (GPT-OSS)
    mamba_scan_eff: float = 0.15  # SSD scan kernels are far from GEMM speed
    # Memory-bound (elementwise) traffic, in tensor elements per token per layer, forward + backward:
    # norms, residual adds, rotary, activation functions, MoE permute/unpermute and router.
    elem_attn: float = 14.0  # x hidden
    elem_mlp: float = 14.0  # x ffn width (x1.5 for gated units)
    elem_moe_token: float = 17.0  # x hidden x top-k (permute/unpermute/gather copies, casts). FITTED
    # x 2 expert-ffn x top-k: a GLU written out in PyTorch ops (GPT-OSS: clamp, quick-gelu, +1, bias). FITTED
    elem_glu_unfused: float = 55.3
    elem_quant: Mapping[str, float] = field(default_factory=lambda: {
        # extra quantize/transposes of GEMM inputs, x (sum of GEMM input widths); fp8_mx, fp8_cs FITTED
        "bf16": 0.0, "fp8_cs": 3.34, "fp8_mx": 2.92, "fp8_sc": 5.0, "nvfp4": 4.3,
    })
    hbm_eff: float = 0.7  # elementwise kernels reach ~70 % of HBM bandwidth
    nvlink_eff: float = 0.75  # NCCL bus bandwidth / link bandwidth
    net_eff: float = 0.8
    lat_nvlink_s: float = 12e-6  # per collective
    lat_net_s: float = 30e-6
    # All-to-all across nodes reaches at most this per GPU whatever the NIC (64-rank NCCL all-to-all over
    # a rail-optimised fabric: PXN hops, message rates; B300's 800 Gb/s NICs ran GPT-OSS no faster than
    # B200's 400 Gb/s). FITTED, on the B200/B300 GPT-OSS rows only.
    a2a_net_gbps: float = 45.0
    # TP with sequence parallelism: exposed share of AG/RS time (TE userbuffers overlap inside NVLink).
    tp_exposed_nvlink: float = 0.3
    tp_exposed_net: float = 0.9
    cp_exposed: float = 0.3  # ring attention P2P overlaps with attention compute
    pp_exposed: float = 0.3  # async P2P between stages
    # the loss takes one layer's slot of the pipeline split (account_for_loss_in_pipeline_split), whatever
    # it costs (False: spread over all stages, as the hand-tuned model did)
    pp_loss_slot: bool = True
    # MoE token dispatch: fraction of link bandwidth reached (alltoall, hybridep FITTED) and the fixed
    # cost per MoE layer per micro-batch (host syncs for dropless token counts; all but flex FITTED).
    a2a_eff: Mapping[str, float] = field(default_factory=lambda: {
        "alltoall": 0.95, "deepep": 0.84, "hybridep": 0.639, "flex": 0.84})
    moe_fixed_s: Mapping[str, float] = field(default_factory=lambda: {
        "alltoall": 0.000721, "deepep": 0.000508, "hybridep": 0.000101, "flex": 1.0e-3})
    moe_graph_saving: float = 0.5  # share of that fixed cost removed by CUDA graphs of moe_router/preprocess
    a2a_exposed_overlap: float = 0.311  # --moe_a2a_overlap leaves this share of the dispatch exposed. FITTED
    # CPU side: kernels per layer per micro-batch (fwd+bwd) and the host time of one (Python, PyTorch
    # dispatch, launch); MoE layers add kernels per local expert (Hopper: one GEMM + casts per expert;
    # Blackwell: split/quantize per expert around the grouped GEMM). kernels_moe_layer, the expert
    # kernels (Blackwell, Hopper FP8) and launch_s FITTED.
    kernels_dense_layer: float = 90.0
    kernels_moe_layer: float = 359.0
    hopper_expert_kernels: Mapping[str, float] = field(default_factory=lambda: {"bf16": 9.0, "fp8": 31.8})
    blackwell_expert_kernels: float = 10.6
    launch_s: float = 1.82e-5
    # Host CPU time relative to the x86 hosts of B200/H100 systems, by GPU name or `GPU.host`. FITTED:
    # Grace with NVLink-C2C syncs and launches faster; the B300 factor rests on one row (Qwen3 235B).
    host_slowdown: Mapping[str, float] = field(default_factory=lambda: {"grace": 0.565, "b300": 1.51})
    graph_launch_factor: float = 0.1  # launch cost left inside a CUDA graph
    # GPU and CPU time per micro-batch combine as a p-norm, a smooth max: near a tie, syncs and launch gaps
    # expose part of both. FITTED. 0: the hand-tuned rule, CPU time beyond `cpu_overlap` x GPU time.
    cpu_smooth_p: float = 6.07
    cpu_overlap: float = 0.85
    dp_hide: float = 0.8  # share of one micro-batch's backward that hides the DP reduce-scatter/all-gather
    fsdp_hide: float = 0.85  # Megatron FSDP prefetch overlaps per-layer all-gathers with compute
    fsdp_slowdown: float = 0.034  # SM contention of the overlapped FSDP collectives. FITTED
    offload_hide: float = 0.8
    optimizer_bytes_per_param: float = 32.0  # Adam: fp32 param, grad, m, v read + write, bf16 copy
    step_fixed_s: float = 0.05  # per-iteration host work: logging, loss reduce, grad-norm, timers
    # memory (not fitted: the published table gives no memory figures)
    # Activations are counted tensor by tensor (`_act_bytes`); TE frees or aliases some of them. The scale
    # is set so that the presets whose offload/recompute counts were chosen to just fit (Llama3 70B
    # GB200/GB300 FP8 with 40/20 offloaded layers, DeepSeek-V3 GB300) do fit.
    act_scale: float = 0.85
    workspace_gb: float = 3.0  # cuBLAS/TE workspaces, NCCL buffers, allocator slack
    fragmentation: float = 1.03  # reserved / allocated (the tight presets set expandable_segments)
    context_gb: float = 1.5  # CUDA context (outside the PyTorch allocator)


KNOBS = Knobs()
