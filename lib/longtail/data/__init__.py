"""Long-tailed training sets, test-agnostic distributions, data sources and batched augmentation."""

from .augment import ROTATION_MODES, AugmentConfig, augment_batch, normalize
from .datasets import ARRAY_DATASETS, ArraySpec, LongTailData, array_spec, build_longtail_data
from .distributions import (
    IMBALANCES,
    agnostic_counts,
    agnostic_indices,
    distribution_names,
    floor_counts,
    imagelist_agnostic_indices,
    parse_distribution,
    rank_by_frequency,
)
from .imagelist import (
    IMAGELIST_DATASETS,
    IMAGELIST_NMAX,
    MAX_PIXELS,
    DecodedImages,
    DecodedSplit,
    ImageList,
    ImageListData,
    ImageListDataset,
    build_imagelist_data,
    lists_to_indices,
    read_image_list,
    write_image_list,
)
from .imbalance import (
    build_longtail_counts,
    class_counts,
    heldout_per_class,
    select_per_class,
    shot_groups,
)
from .sources import ArrayData, load_cifar100, load_fashion_mnist
from .summary import (
    agnostic_table,
    export_png_list,
    imagelist_protocol_table,
    longtail_table,
    shot_group_table,
    write_array_lists,
)

__all__ = [n for n in dir() if not n.startswith("_")]
