"""mlserve developer CLI: python -m mlserve {demo,local,train-example,predict,bench}."""
