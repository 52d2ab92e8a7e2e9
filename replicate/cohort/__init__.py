"""The cohort: DICOM reading, the Duke-Breast-Cancer-MRI loader, the synthetic cohort, preprocessing and patches."""
