r"""An image-folder archive (`<root>/{train,test}/<class>/<file>.jpg` in a .tar.gz, e.g.
the CIFAR-10 JPEG archive) -> the npz the trainer reads (x_train, y_train, x_test,
y_test uint8 / int64, class_names), with numpy and Pillow only.

  python experiments/benchmarks/jpeg_archive.py ARCHIVE.tar.gz OUT.npz

Classes are numbered in sorted name order; images in archive order within a split.
"""
import io
import sys
import tarfile

import numpy as np
from PIL import Image


def read_archive(path) -> dict:
  images = {'train': [], 'test': []}
  labels = {'train': [], 'test': []}
  members = []
  with tarfile.open(path) as tar:
    for member in tar:
      parts = member.name.split('/')
      if member.isfile() and len(parts) >= 4 and parts[-3] in images:
        members.append((parts[-3], parts[-2], member, tar.extractfile(member).read()))
  classes = sorted({c for _, c, _, _ in members})
  for split, name, _, raw in members:
    images[split].append(np.asarray(Image.open(io.BytesIO(raw)).convert('RGB'), np.uint8))
    labels[split].append(classes.index(name))
  return {
      'x_train': np.stack(images['train']), 'y_train': np.asarray(labels['train']),
      'x_test': np.stack(images['test']), 'y_test': np.asarray(labels['test']),
      'class_names': np.asarray(classes)
  }


def main(argv):
  arrays = read_archive(argv[1])
  np.savez(argv[2], **arrays)
  print({k: v.shape for k, v in arrays.items()})


if __name__ == '__main__':
  main(sys.argv)
