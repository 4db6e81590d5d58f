#!/usr/bin/env bash
# The seed workflow of ClearML Data's documentation, on the embedded defaults:
# create a dataset from a folder, close it, get a local copy.
set -euo pipefail
work=$(mktemp -d)
cd "$work"
mkdir -p data_folder/images data_folder/labels
for i in $(seq 1 20); do
    head -c 4096 /dev/urandom > "data_folder/images/img_$i.bin"
    echo "label $i" > "data_folder/labels/img_$i.txt"
done

clearml-data create --project dataset_example --name initial_version
clearml-data add --files data_folder
id=$(clearml-data close --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["id"])')
echo "closed dataset id=$id"
python3 -c "from clearml_data import Dataset; print(Dataset.get(dataset_id='$id').get_local_copy())"
