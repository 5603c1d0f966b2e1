print("unclip")
