import torch
import torch.nn.functional as F

from pipeline.data.loader import Normalize, Split, epoch_generator, epoch_seed, random_crop_flip, train_batches


def test_crop_is_a_window_of_the_padded_image():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).view(2, 3, 8, 8)
    gen = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, pad=2, flip=False, gen=gen)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_flip_mirrors_some_images_and_keeps_the_others():
    x = torch.randint(0, 255, (64, 1, 5, 5), dtype=torch.uint8)
    out = random_crop_flip(x, pad=0, flip=True, gen=torch.Generator().manual_seed(1))
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(64)]
    same = [torch.equal(out[i], x[i]) for i in range(64)]
    assert all(f or s for f, s in zip(flipped, same))
    assert 10 < sum(flipped) < 54


def test_epoch_stream_depends_only_on_seed_and_epoch():
    split = Split(torch.randint(0, 255, (50, 1, 6, 6), dtype=torch.uint8), torch.arange(50))
    cpu = torch.device("cpu")

    def labels(seed, epoch):
        return torch.cat([y for _, y in train_batches(split, 8, 2, True, epoch_generator(seed, epoch, cpu))])

    assert torch.equal(labels(0, 3), labels(0, 3))
    assert not torch.equal(labels(0, 3), labels(0, 4))
    assert len(labels(0, 1)) == 48   # the last partial batch is dropped
    assert len(set(labels(0, 1).tolist())) == 48


def test_epoch_seeds_of_a_study_never_collide():
    # seeds of a study times epochs of a run (He et al.'s 64k iterations are < 200 epochs of CIFAR-10)
    seeds = [epoch_seed(seed, epoch) for seed in range(20) for epoch in range(1, 1001)]
    assert len(set(seeds)) == len(seeds)


def test_normalize_uses_the_given_statistics():
    norm = Normalize([0.5], [0.25], torch.device("cpu"))
    x = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2)
    assert torch.allclose(norm(x).flatten(), torch.tensor([-2.0, 2.0]))


def test_select_classes_relabels_in_order():
    split = Split(torch.zeros(6, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 5, 6, 5, 9, 1]))
    sub = split.select_classes([9, 5])
    assert sub.y.tolist() == [1, 1, 0]


def test_select_classes_on_an_empty_split_and_absent_classes():
    empty = Split(torch.zeros(0, 1, 2, 2, dtype=torch.uint8), torch.zeros(0, dtype=torch.long))
    assert len(empty.select_classes([3, 4])) == 0
    split = Split(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 2]))
    assert split.select_classes([7, 1]).y.tolist() == [1]
