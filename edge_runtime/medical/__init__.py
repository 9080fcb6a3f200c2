"""Medical triage on the runtime: DICOM reading, studies, intended use, operating points, triage,
the worklist, the HTML report and the hash-chained audit log; DICOM as training data
(``dicom_dataset``)."""
