"""Planning: the cluster model (:mod:`.cluster`), engine demands and bin packing (:mod:`.packing`), wave
scheduling (:mod:`.schedule`), the throughput model (:mod:`.throughput`) and the run plan (:mod:`.plan`)."""
