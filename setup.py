"""Only what setup.cfg cannot say: build the man page from the argparse parser."""

from build_manpages import build_manpages, get_build_py_cmd
from setuptools import setup

setup(cmdclass={"build_manpages": build_manpages, "build_py": get_build_py_cmd()})
