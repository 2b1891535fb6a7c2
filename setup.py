"""The packages setuptools installs: every umlip_helpers package as found, plus the repository's data/ shipped inside
the package as umlip_helpers/shipped_data (umlip_helpers.paths.data_path finds it outside a checkout). The rest of
the configuration is in pyproject.toml."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["umlip_helpers", "umlip_helpers.*"]) + ["umlip_helpers.shipped_data"],
      package_dir={"umlip_helpers.shipped_data": "data"},
      package_data={"umlip_helpers.shipped_data": ["**/*"]},
      include_package_data=False)  # else setuptools would also treat data/'s folders as packages, warning for each
