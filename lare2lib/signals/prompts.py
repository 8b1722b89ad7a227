"""LaRE's prompts: the three prompt policies, and the check that prompts never tell the classes apart.

The released LaRE conditions on "a photo of a {class}" (the ImageNet class name, written with the
article "a" whatever the class) and falls back to "a photo" for images without a known class.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["PROMPT_POLICIES", "prompt_for", "extractor_prompts", "check_prompts_by_label"]

PROMPT_POLICIES = ("class", "photo", "empty")
"""``class``: "a photo of a {class}" (LaRE on ImageNet-class data), falling back to "a photo"
for images without a known class; ``photo``: "a photo"; ``empty``: "" (class-free data)."""


def prompt_for(policy: str, class_name: str | None, known_classes: Sequence[str] = (),
               article: str = "a") -> str:
    """The LaRE prompt of one image under ``policy`` (see :data:`PROMPT_POLICIES`).

    ``known_classes`` is the model's class vocabulary (empty = any name, as with CLIP); a class
    outside it falls back to "a photo" rather than failing. ``article``: see
    :data:`lare2lib.models.conditioning.ARTICLES` (default: the release's literal "a").
    """
    from lare2lib.models.conditioning import class_prompt

    if policy == "empty":
        return ""
    if policy == "photo":
        return "a photo"
    if policy != "class":
        raise ValueError(f"unknown prompt policy {policy!r}; valid: {list(PROMPT_POLICIES)}")
    known = {name.lower() for name in known_classes}
    if not class_name or (known and class_name.lower() not in known):
        return "a photo"
    return class_prompt(class_name, article)


def extractor_prompts(extractor, class_names: Sequence[str | None] | None, policy: str,
                      count: int) -> list[str]:
    """The prompt of each of ``count`` images for a LaRE extractor: its model's class vocabulary
    and its article (``class_names`` None: no class for any image)."""
    known = tuple(getattr(extractor.components, "class_names", ()) or ())
    names = list(class_names) if class_names is not None else [None] * count
    article = getattr(extractor, "article", "a")
    return [prompt_for(policy, name, known, article) for name in names]


def check_prompts_by_label(prompts: Sequence[str], labels: Sequence[int | None]) -> None:
    """Refuse prompts that tell the classes apart: one label all "a photo", another class prompts.

    GenImage's ``ILSVRC2012_val_*`` reals carry no class in their names while its fakes do, so
    without a class mapping only the fakes' maps would be conditioned on their class, and any
    map-based detector could learn the prompt instead of the image.
    """
    generic = {"", "a photo"}
    by_label: dict[int, list[bool]] = {}
    for prompt, label in zip(prompts, labels):
        if label is not None:
            by_label.setdefault(int(label), []).append(prompt not in generic)
    share = {label: sum(flags) / len(flags) for label, flags in by_label.items()}
    if len(share) > 1 and min(share.values()) == 0 < max(share.values()):
        counts = ", ".join(f"label {label}: {sum(by_label[label])}/{len(by_label[label])}"
                           for label in sorted(by_label))
        raise ValueError(
            f"class prompts would differ by label ({counts} get 'a photo of a {{class}}'): the maps "
            "would encode the label. Give the unclassed images their classes (GenImage val reals: "
            "val_classes= / --val-classes with the release's anns/filename_to_folder.json or "
            "LOC_val_solution.csv), or use the prompt policy 'photo' for every image")
