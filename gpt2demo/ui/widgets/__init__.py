"""Pieces of the page that several tabs draw: plain functions from engine facts to HTML and data.

  styles.py      the teaching views' CSS and click script, and their HTML component
  tokens.py      one token as text, token boxes, the text as boxes
  candidates.py  the candidate table and the words for a sampling rule's cut
  chart.py       the live next-token bar chart
  controls.py    the prompt box and the sampling controls, one builder for every tab
"""
