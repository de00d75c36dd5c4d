"""Golden digests of the procedural worlds: every scene must stay bit-identical.

For both worlds ("street", "objects"), a few seeds are rendered at the world's default size
and at its training size (``WorldInfo.train_size``), with and without ``shuffle=True``, and
the sha256 of the image bytes (float32, C-contiguous) and of the labels bytes (int64,
C-contiguous) are compared with the digests below.

The digests were recorded from the code as it was *before* the street world's ``layout``
was split into one function per section (a no-behaviour-change refactor): they prove that
the renderers, and so every training set and attack benchmark built on them, did not move.
They must only change with a deliberate change to the worlds (geometry, colours, textures,
the order of the random draws...); then regenerate them, from the repository root, with::

    PYTHONPATH=. python tests/data/test_world_golden.py

and paste the printed table over ``GOLDEN`` (saying in the commit why the scenes changed).
Float results may in principle depend on the numpy build; all worlds code is numpy.
"""
import hashlib

import numpy as np
import pytest

from explorer.data.worlds import WORLDS, render_scene

SEEDS = (0, 1, 7, 10003, 123456)


def _cases():
    for world in ("street", "objects"):
        info = WORLDS[world]
        for size in (info.default_size, info.train_size):
            for shuffle in (False, True):
                for seed in SEEDS:
                    yield world, seed, tuple(size), shuffle


def _digests(world: str, seed: int, size: tuple[int, int], shuffle: bool) -> tuple[str, str]:
    image, labels = render_scene(world, seed, size[0], size[1], shuffle)
    img = np.ascontiguousarray(image.numpy(), dtype=np.float32)
    lab = np.ascontiguousarray(labels.numpy(), dtype=np.int64)
    return hashlib.sha256(img.tobytes()).hexdigest(), hashlib.sha256(lab.tobytes()).hexdigest()


#: (world, seed, (height, width), shuffle) -> (sha256 of image bytes, sha256 of labels bytes)
GOLDEN = {
    ("street", 0, (256, 512), False): ("d79661cc3718770a415d38284a643a53e5537d2bb1df6dda1195e497d2315eb7", "0a7a0c469fb13c7d7e80e7bc5f3a5e397b5e1f88298b909a0bb2b2780bbf0750"),
    ("street", 1, (256, 512), False): ("1640fb82da4adf157e8212d63bd15836efaa531260efe64f2ae1148f06f27759", "52dffceda661912896d4be2c9d4594ecb549a4a16f46dedc253673f0ca82fec3"),
    ("street", 7, (256, 512), False): ("c01f9cce35527abd2ad64428ae9033ae958c3adcce63f40501efc521233fd7ce", "a3bcc0de279bfcc07831031e50e95cefea32ff5288206840561c15049f424f5a"),
    ("street", 10003, (256, 512), False): ("4e3c3d851854785fe5a3e2700443d831d4521f1eea45ad7253a5237d8ba99ae3", "a49009dd3595ed3c17fac8e4c16c737a4d200416e07a8ffa5a80da8985e00536"),
    ("street", 123456, (256, 512), False): ("2e0da428bcf47c6bae89017a855d7249356d01a37c29519b12edd134e9a844a5", "b69718a57de0ecfdd7e9f262c9f3ea63be2bf2ae5905dabc2cde500c6ba643a9"),
    ("street", 0, (256, 512), True): ("868c08736184313d162431de3d9fcfa7be4bfaf7ee10ee5b53ef270edd3f4269", "ba156dbf972ffc1973a01df8d060610ad1a6c87ff7d51fe6298821b41847f3c4"),
    ("street", 1, (256, 512), True): ("88e9e1a1f63189fdf5f56c8c10df19dc43c21efe9859cc7b43134aaf1311f15c", "cfc17efb2de8cd07299587c05821495c92a1f966630dd320d9c415135eaedba8"),
    ("street", 7, (256, 512), True): ("55b9b24c5494fc32f8485e087927ba7d43b08f6f5eea39ca824c900fb335eee3", "67e057a211cd1c751c007d0627ab317804c80d2f72a353b26040bd6c71159689"),
    ("street", 10003, (256, 512), True): ("f87575ffb64edfe8734ce42c39e9a3a097945a88b439db62855e8a80327542c1", "3e6700ef8036a2ba019928132f6025729110c0c9e635b99d0ddb4197a1bb4652"),
    ("street", 123456, (256, 512), True): ("070a1a11b259c479c4c8006e867d6626a0f7cf0e3ed28514ba02ba5ca5324f1a", "6bf4f02ac33d4c8a39b33543676c1be355f31945277e2d49d363b2bb78641f96"),
    ("street", 0, (128, 256), False): ("80eed9dcb4cceab28bc1e92c0bc3dee0272e14bd2b039953872a93822293d317", "016aec0841f7dd195ad2e333f62f8c263af4c48937544ef90d9ced8ec8504efa"),
    ("street", 1, (128, 256), False): ("d415d746b57eafef95d456f83ee7f38019f849e80b0f8849813749d718acb2d6", "7bedcf3c3fa2c91f431ed650b87271e808d1fad609b26b6b4bb3fb011a6117e7"),
    ("street", 7, (128, 256), False): ("cff74b74ea47fe5008a185402a59aaf36bd516516081c91ab1f4a4e9d3541950", "ac3743526cf2c247cb2db22fc9548a2ae3e0c67d0cbeaa91ac6638873203ac34"),
    ("street", 10003, (128, 256), False): ("1f59822d5154de1a834778b4467764f4ecdd11feefd8a03b95602935a1fc2b34", "69ffd2a749f00384b44a04bca2746bd0b337132628cd799f7cf2e69c4ee01020"),
    ("street", 123456, (128, 256), False): ("9bfa0be1fc77de6a8ed455ad7f8e0d8d3c3cdb3ac2c90aaffd04bb8f8d3c0fce", "6f48e0ee818b8f03ded79d16ea7b295b9cffdf6f34d6b97c96941998581398c3"),
    ("street", 0, (128, 256), True): ("9d6f6ebc9409109bbdcc0490dfa3b993de777cbb768fe14de78028468a9c49e0", "1f5e7f43c343af2ef99fc5bb4643338f013d2cc300b099e830483f4c918d9d4e"),
    ("street", 1, (128, 256), True): ("bb63d6c23bed1826c8462286ca965fec9929ea2dc68f08c00b5f4e5a0d3b67e2", "eccc92359589fc5f1d31b335c48931e0cf224cd60b78dc44757a0512b68257ea"),
    ("street", 7, (128, 256), True): ("23bd78ce826eed90ff7a26f2a707810fc558f9dad6d6f65e75c77e5b3df56a25", "22a13c271dbbff22e04a8f0dbef4c371214b1cf944314bdbe0b7dd6413c3a93c"),
    ("street", 10003, (128, 256), True): ("b83067bc0de11b343ddd84f08f00c9d9ebdb4c75686973d579e3c809649f43c2", "e859c9f7ab54c25770f9bad39ea2b755b76b0d0cb01e7e1cd86004a69c2ecf8c"),
    ("street", 123456, (128, 256), True): ("0f8fb2c55e847faa95e0cb29e821179440e82de1d5a2aa25164e367a7c918463", "2ef276a5d3803c28279a097a337f5a8f02de947f577ce5a90dddb35eae78f7ac"),
    ("objects", 0, (256, 256), False): ("c4b04ad52d3c48fcebf51fa9e1f41aee6fcd983bafefb010466cc52fe4869a81", "794d08c72b9f61524ee8d2276e00a9d6c339bc421976976209c6351d9dc6b03a"),
    ("objects", 1, (256, 256), False): ("bf451ae64fc8fdf522ce2798d333ce9cd3741b0a9d6e8cbf13a316aefdd28bda", "414e06306e1cbdc9884755ac1c693bcf904d0ffb99c32edfb0a900df8c186d45"),
    ("objects", 7, (256, 256), False): ("f9fd5b3d0a9c646b5a3562e31e2806f2578db6c327118e3c91c23b7eea98e111", "00efc6f5591f0816a9af98e929e797654fd764a36cbbcbf06e730349ab17ae01"),
    ("objects", 10003, (256, 256), False): ("b6b5edd3fc5027b5b4961165188b23537f4f937390f428b48c1bdab5e5c395fc", "67adc1061fd7c28f2954623080a01e4a9b711d3449d8003b523b8ef389ac272f"),
    ("objects", 123456, (256, 256), False): ("266f86927de2d94a84426ec3e4c53adea0b01ba379b11361ffb1754a13bbf980", "c9361bdb83e113bf89e374ffadd50ef8895ddb9104cccde8a017751d93918176"),
    ("objects", 0, (256, 256), True): ("47e89f8aa278ccdc879579c6b9f5391e84876f8be4019bb4cefc82b54c579bdb", "33303b6fcf4d877e2989d19873497763358f964148ec0392fa4b9729c1bc0a15"),
    ("objects", 1, (256, 256), True): ("ea47dd2ee003111f214459d11e3d9c53ea7fa89d8d727e1a7a88325d7907cd52", "8470cdd3687a2d8eb73f06c95b77a476d527b8ad906cde5123654312f7120607"),
    ("objects", 7, (256, 256), True): ("2e233298879af75ff96e1114a6bf9bdb751e6401bf527d75a98fee211cba905f", "f81e8259cd6dba8dfba3f02769d167be53cc9d71c995d838fae2a7a4679e4493"),
    ("objects", 10003, (256, 256), True): ("369ffefe83df094655053c827269a746fb7f361e9b98d7d7095d67bacc6450f9", "c132ea08c8bacef1f94b90fdb7a14a6320852beab6b3563e6b11de99e3dca8c0"),
    ("objects", 123456, (256, 256), True): ("758fb1c7d02f098bd2fd763b3ba0dd2431f5f9a13490cd9f4ea20239e49c88a4", "bbc5270fb2fcc013b52a0b18f4e7adb3f81122bdef26e6b2f8eb89681e6657c2"),
    ("objects", 0, (160, 160), False): ("c790edd2c8172b224eeaddcad35690413489fed73b4de5ebd90ce08745b9970e", "5a470335ae5f3b7763a327c596c4d2e3caef9ca3d01e1e47dd55475a239fce0a"),
    ("objects", 1, (160, 160), False): ("6bf2da30f70d92a4e2a6e31ea80a71f0c1706252a4d604e624bc7ed88785304f", "0403aba654bf189b1da2e148952a9de307b1419c52a577bc0f20b60640f9b29b"),
    ("objects", 7, (160, 160), False): ("071343c196e3e465470dad45571091cc5d068d6a140f900768fb8ab15f6672c9", "733fce5a7e2549ba3ff92929ac47301bf54a488044af0dbe89570b3fdcb60709"),
    ("objects", 10003, (160, 160), False): ("8f43252d676a9051fa831cb2763af1dbe0ce1cbc7432cb36a187b026e5a533ff", "c847605a112a5c85cd3834c6692a88d15af352dbe414b8bcecd7b1c72627156b"),
    ("objects", 123456, (160, 160), False): ("f0e0d5b1f4445a10976d5a01b9cf4904235b6141c102f142e3f91ac6ccd57f7d", "f347e0f7d547d7869ebb79135dbf7db11af3fd087a95cb6064fb3c2282994da0"),
    ("objects", 0, (160, 160), True): ("ad3d106fa6118a70c4fad178ba5b2cbbf0ad62f93053ce0e9002f603de23ef33", "30972bccb34cc44e99a8f2cfa704f4b27914f2f38f14c4b534e9f744b4019869"),
    ("objects", 1, (160, 160), True): ("c0065a2cae96a5f959533b323327a6a4a2099604dbb5b7183d4b9366f3ed5eff", "6aed4a2e1a1c3d41df2f281896025c3445060abfad5f626a565dee08a41e399b"),
    ("objects", 7, (160, 160), True): ("47312972c843ef9eee5bc0a566b5586d681c904dfb5cad94b0a90e7ed4e408b9", "b442785774ebcf55d505128371cb54c4647326f47d9c03f3fabc4c30d0d50d37"),
    ("objects", 10003, (160, 160), True): ("f1b8ca8dbfddf563e231d1a9742f119015b78da6ae89f5fa4aedfd723fe67958", "239bf63193eab2c6ce5e4c0147958e9e800acea2aee2c9b620ba072062f1afb4"),
    ("objects", 123456, (160, 160), True): ("f2625c354db295289421d461b45f156f98fc687103d6b4962ccf5ee87d73ecd0", "83815d3855facbe2564582f115f2d8b2ff5758bec78e746d1c9f3a38630316a6"),
}


def test_golden_covers_all_cases():
    assert set(GOLDEN) == set(_cases())


@pytest.mark.parametrize("world, seed, size, shuffle", list(_cases()))
def test_scene_is_bit_identical(world, seed, size, shuffle):
    image_digest, labels_digest = _digests(world, seed, size, shuffle)
    want_image, want_labels = GOLDEN[(world, seed, size, shuffle)]
    assert labels_digest == want_labels, f"labels of {world} seed {seed} at {size} shuffle={shuffle} changed"
    assert image_digest == want_image, f"image of {world} seed {seed} at {size} shuffle={shuffle} changed"


if __name__ == "__main__":  # regenerate the table (see the module docstring)
    for case in _cases():
        print(f"    {case!r}: {_digests(*case)!r},")
