"""Packaging for txconnpool."""

import os

import setuptools
from setuptools import find_packages, setup

here = os.path.abspath(os.path.dirname(__file__))

with open(os.path.join(here, "txconnpool", "_version.py")) as f:
    version = {}
    exec(f.read(), version)

with open(os.path.join(here, "README.rst"), encoding="utf-8") as f:
    longDescription = f.read()

setup(
    name="txconnpool",
    version=version["__version__"],
    description="Connection pools for Twisted clients and connection limits for Twisted servers.",
    long_description=longDescription,
    long_description_content_type="text/x-rst",
    # An SPDX license expression (PEP 639) where setuptools knows them (77 and later, which
    # pyproject.toml asks for), the plain license field otherwise.
    **(
        {"license_expression": "Apache-2.0"}
        if int(setuptools.__version__.split(".")[0]) >= 77
        else {"license": "Apache-2.0"}
    ),
    license_files=["LICENSE"],
    url="https://github.com/txconnpool/txconnpool",
    project_urls={
        "Documentation": "https://github.com/txconnpool/txconnpool/tree/main/docs",
        "Source": "https://github.com/txconnpool/txconnpool",
        "Issues": "https://github.com/txconnpool/txconnpool/issues",
        "Changelog": "https://github.com/txconnpool/txconnpool/blob/main/CHANGELOG.rst",
    },
    packages=find_packages(include=["txconnpool", "txconnpool.*"]),
    package_data={"txconnpool": ["py.typed"]},
    python_requires=">=3.10",
    install_requires=[
        "Twisted>=23.10.0",
        "attrs>=22.2.0",
        "typing_extensions>=4.6",
        "zope.interface>=5.0",
    ],
    extras_require={
        "dev": [
            "pytest>=7",
            "pytest-twisted>=1.14",
            "hypothesis>=6",
            "treq>=23.11.0",
            "Twisted[tls]>=23.10.0",
            "mypy>=1.8",
            "mypy-zope>=1.0",
            "ruff>=0.4",
            "sphinx>=7",
            "pydoctor>=25.10",
            "prometheus_client>=0.17",
            "matplotlib>=3.7",
            "tqdm>=4.60",
            "pylibmc>=1.6",
            "pymemcache>=4.0",
            "txredisapi>=1.4.10",
        ],
        "prometheus": ["prometheus_client>=0.17"],
        "redis": ["txredisapi>=1.4.10"],
        "bench": [
            "matplotlib>=3.7",
            "tqdm>=4.60",
            "aiomcache>=0.8",
            "emcache>=1.0",
            "uvloop>=0.17",
        ],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Typing :: Typed",
    ],
)
