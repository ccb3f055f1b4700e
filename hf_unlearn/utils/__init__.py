"""Small runtime helpers with no unlearning logic: ZeRO-3 whole-weight access and a frozen GC heap."""
