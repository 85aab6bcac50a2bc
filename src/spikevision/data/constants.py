"""Dataset statistics and sizes: the one place they live (STYLE rule 13).

Means and standard deviations are per channel over the training split, for
pixels scaled to ``[0, 1]``.
"""

from __future__ import annotations

__all__ = [
    "MNIST_MEAN", "MNIST_STD", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD",
    "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR10_STD_LEGACY", "CIFAR100_MEAN", "CIFAR100_STD",
    "IMAGENET_MEAN", "IMAGENET_STD", "DVS128_SENSOR_SIZE", "CIFAR10_DVS_CLASSES",
    "CIFAR10_CLASSES", "FASHION_MNIST_DEFAULT_ROOT", "MNIST_DEFAULT_ROOT",
    "FASHION_MNIST_CLASSES", "MNIST_CLASSES", "CIFAR100_CLASSES", "CLASS_NAMES",
]

# Class names, in label order (label i is CLASS_NAMES[dataset][i]).
# Fashion-MNIST: the names of the data set's README (Xiao et al., 2017).
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MNIST_CLASSES = tuple(str(i) for i in range(10))

# MNIST (LeCun et al., 1998): the usual figures.
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)

# Fashion-MNIST (Xiao et al., arXiv:1708.07747), computed on the 60000 training images.
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)

# CIFAR-10 (Krizhevsky, 2009): true per-channel std over the training set.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
# The std found in many CIFAR training scripts (and likely the papers' code): it
# is the mean of per-image stds, not the dataset std. Select it with
# ``DataConfig(std=CIFAR10_STD_LEGACY)`` to match such code exactly.
CIFAR10_STD_LEGACY = (0.2023, 0.1994, 0.2010)

# CIFAR-100, training set.
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

# ImageNet-1k (the torchvision / timm constants).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# CIFAR-100 fine labels, in label order (the ``fine_label_names`` of the data set's ``meta`` file).
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse",
    "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain",
    "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose",
    "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel",
    "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor", "train",
    "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)

# CIFAR10-DVS (Li et al., Front. Neurosci. 2017): DVS128 recordings, 128 x 128
# pixels, 2 polarities; one folder per CIFAR-10 class.
DVS128_SENSOR_SIZE = (128, 128)  # (H, W)
CIFAR10_DVS_CLASSES = CIFAR10_CLASSES

#: data set name -> class names in label order (what ``pretrained_cfg.class_names`` and model cards carry)
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "fashion_mnist": FASHION_MNIST_CLASSES, "mnist": MNIST_CLASSES, "cifar10": CIFAR10_CLASSES,
    "cifar100": CIFAR100_CLASSES, "cifar10_dvs": CIFAR10_CLASSES,
}

# Where the Debian package ``dataset-fashion-mnist`` installs the IDX files.
FASHION_MNIST_DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
MNIST_DEFAULT_ROOT = "/usr/share/datasets/mnist"
