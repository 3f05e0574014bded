"""Communication time of the performance model: NCCL collectives and their exposed share per micro-batch.

Ring all-gather / reduce-scatter, all-to-all and point-to-point times over NVLink domains and NICs, and
the TP, CP, EP and PP terms built from them (ranks laid out tp-cp-ep-dp-pp). The DP and FSDP terms,
which depend on the whole step, are in `dse.simulator._model.predict`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from dse.simulator._flops import _kinds
from dse.simulator._hardware import GB, GPU, Knobs
from dse.simulator._resolve import _Config


# ---------------------------------------------------------------------------------------------------
# communication primitives
# ---------------------------------------------------------------------------------------------------
def _per_domain(size: int, stride: int, domain: int) -> int:
    """Members of a group (`size` ranks, `stride` apart) that share one NVLink domain."""
    if size <= 1:
        return 1
    if stride >= domain:
        return 1
    return max(1, min(size, domain // stride))


def _ring_time(nbytes: float, size: int, per_dom: int, gpu: GPU, k: Knobs) -> float:
    """All-gather or reduce-scatter of a `nbytes` full buffer over `size` ranks (ring, NCCL).

    Inside one NVLink domain the bus bandwidth is NVLink's; across domains the ring's inter-node hops
    share the NICs of the members in each domain, so bandwidth ~ min(NVLink, members_per_domain x NIC).
    """
    if size <= 1 or nbytes <= 0:
        return 0.0
    if per_dom >= size:
        bw, lat = gpu.nvlink_gbps * k.nvlink_eff, k.lat_nvlink_s
    else:
        bw, lat = min(gpu.nvlink_gbps * k.nvlink_eff, per_dom * gpu.network_gbps * k.net_eff), k.lat_net_s
    return nbytes * (size - 1) / size / (bw * GB) + lat * math.log2(size)


def _a2a_time(nbytes: float, size: int, per_dom: int, gpu: GPU, eff: float, k: Knobs) -> float:
    """All-to-all of `nbytes` per rank: same-domain peers over NVLink, the rest over this GPU's NIC."""
    if size <= 1 or nbytes <= 0:
        return 0.0
    local = nbytes * (per_dom - 1) / size / (gpu.nvlink_gbps * eff * GB)
    remote = nbytes * (size - per_dom) / size / (min(gpu.network_gbps * eff, k.a2a_net_gbps) * GB)
    lat = k.lat_nvlink_s if per_dom >= size else k.lat_net_s
    return max(local, remote) + lat


def _p2p_time(nbytes: float, crosses: bool, gpu: GPU, k: Knobs) -> float:
    if nbytes <= 0:
        return 0.0
    if crosses:
        return nbytes / (gpu.network_gbps * k.net_eff * GB) + k.lat_net_s
    return nbytes / (gpu.nvlink_gbps * k.nvlink_eff * GB) + k.lat_nvlink_s


def _comm_terms(c: _Config, t: Mapping[str, float], k: Knobs) -> dict[str, float]:
    """Exposed communication seconds per micro-batch, whole model, one GPU (ranks laid out tp-cp-ep-dp-pp)."""
    a, gpu = c.arch, c.gpu
    h = a.hidden_size
    tok = c.mb * c.seq / c.cp
    tok_gpu = tok / c.tp
    dense_layers, moe_layers, n_layers = _kinds(a)
    out: dict[str, float] = {}
    # TP + sequence parallel: all-gather and reduce-scatter of the full activation around attention and
    # MLP, forward and backward (6 per layer; 3 for MoE layers whose experts are not TP-split).
    tp_dom = _per_domain(c.tp, 1, c.domain)
    colls = 6 * (n_layers - moe_layers) + moe_layers * (3 if c.etp == 1 else 6)
    tp_time = colls * _ring_time(tok * h * 2, c.tp, tp_dom, gpu, k)
    out["tp_comm"] = tp_time * (k.tp_exposed_nvlink if tp_dom >= c.tp else k.tp_exposed_net)
    # CP: ring attention passes K,V chunks (cp-1) times per layer forward; K,V and their grads backward.
    groups = a.num_query_groups or a.num_attention_heads
    kv_width = 2 * groups * a.kv_channels
    if a.mla:
        kv_width = 2 * a.num_attention_heads * (a.mla["qk"] + a.mla["rope"])
    cp_layers = (a.attention_layers or 0) if a.mamba_layers else n_layers
    cp_time = 0.0
    if c.cp > 1:
        cp_bytes = 3 * (c.cp - 1) * tok * kv_width * 2 / c.tp
        cp_time = cp_layers * _p2p_time(cp_bytes, _per_domain(c.cp, c.tp, c.domain) < c.cp, gpu, k)
    out["cp_comm"] = max(cp_time * k.cp_exposed, cp_time - t["attn_core"])
    # EP: token dispatch + combine, forward and backward: 4 all-to-alls per MoE layer.
    ep_dom = _per_domain(c.ep, c.etp, c.domain)
    a2a = _a2a_time(tok_gpu * a.moe_router_topk * h * 2, c.ep, ep_dom, gpu, k.a2a_eff.get(c.dispatcher, 0.55), k)
    out["ep_comm"] = 4 * moe_layers * a2a * (k.a2a_exposed_overlap if c.a2a_overlap else 1.0)
    # PP: every virtual stage sends its output forward and a gradient backward (async, mostly hidden).
    crosses = c.n // c.pp >= c.domain
    out["pp_comm"] = 2 * c.vp * _p2p_time(tok_gpu * h * 2, crosses, gpu, k) * k.pp_exposed if c.pp > 1 else 0.0
    return out
