"""kdbench's builtin distillation methods, one file each (imported only when used)."""

from kdbench import hookimpl

METHODS = [
    # name, "module:class", one-line description
    ("ce", "ce:CrossEntropyOnly", "No teacher: cross-entropy alone (the baseline every gain is measured against)"),
    # logit
    ("kd", "kd:KD", "Hinton et al. 2015: KL between temperature-softened teacher and student"),
    ("dkd", "dkd:DKD", "Decoupled KD, Zhao et al. CVPR 2022: target (TCKD) and non-target (NCKD) parts"),
    ("dist", "dist:DIST", "DIST, Huang et al. NeurIPS 2022: inter- and intra-class Pearson relations"),
    ("lskd", "lskd:LSKD", "Logit standardization KD, Sun et al. CVPR 2024: KD on z-scored logits"),
    # feature
    ("fitnet", "fitnet:FitNet", "FitNets, Romero et al. ICLR 2015: regress the student's hint onto the teacher's"),
    ("at", "at:AT", "Attention transfer, Zagoruyko & Komodakis ICLR 2017"),
    ("sp", "sp:SP", "Similarity-preserving KD, Tung & Mori ICCV 2019"),
    ("vid", "vid:VID", "Variational information distillation, Ahn et al. CVPR 2019"),
    # relational / contrastive
    ("rkd", "rkd:RKD", "Relational KD, Park et al. CVPR 2019: distance and angle relations"),
    ("pkt", "pkt:PKT", "Probabilistic knowledge transfer, Passalis & Tefas ECCV 2018"),
    ("cc", "cc:CC", "Correlation congruence, Peng et al. ICCV 2019"),
    ("crd", "crd:CRD", "Contrastive representation distillation, Tian et al. ICLR 2020"),
    # cross-modal
    ("cm-align", "cm_align:CrossModalAlign", "Cross-modal: project and align the student's embedding to the teacher's"),
    ("cm-contrastive", "cm_contrastive:CrossModalContrastive", "Cross-modal: symmetric InfoNCE between student and teacher embeddings"),
    ("c2kd", "c2kd:C2KD", "C2KD, Huo et al. CVPR 2024: bidirectional cross-modal KD through proxies"),
]


@hookimpl
def kdbench_register_losses(registry):
    for name, target, description in METHODS:
        registry.add(name, f"kdbench_losses.{target}", description=description, version=1)
